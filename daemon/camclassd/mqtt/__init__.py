"""MQTT: the client service, topics, pure payload builders, HA discovery, commands, `watch`.

Submodules are imported where used so that `camclassd check-config` never loads paho.
"""
