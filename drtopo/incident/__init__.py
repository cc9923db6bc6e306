"""Telling people about an incident: the facts of one (facts), the runbook's notifications filled in from them
(messages), the message sent to a region's incident topic without ever raising (publish), and the Markdown record a
post-mortem starts from (record). Pure functions over typed records; the commands decide when and where to send."""
