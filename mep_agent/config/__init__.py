"""
Configuration: the settings table (each setting with its parser, default and source), the
loader that turns flags, environment and files into one AgentConfig, and the
app_instance_info.yaml model validated with the MEP's rules.
"""
