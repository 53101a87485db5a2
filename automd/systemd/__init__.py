"""All D-Bus: the bus connection, systemd Manager calls and error mapping.

The only package that imports the D-Bus library (dbus-fast).
"""
