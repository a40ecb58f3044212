"""The offline sandbox: Segment and Userflow emulators, the local bridge, the demo and verify."""
