"""Output sinks: MQTT, conversation logs, stdout."""
