"""Contract tests of the Segment and Userflow emulators (sandbox/)."""
