"""The bridge on AWS: secrets, queue, functions, API and alarms, composed by `AwsBridge`.

This family never imports the Segment/Userflow resources in `components/`; the program wires
the two together through the bridge's URL and the secrets' values.
"""
