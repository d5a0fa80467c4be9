"""
The agent's core: the token, registrations and their heartbeats, subscriptions, discovery,
the sync against the MEP's truth, hot reload and termination. Twisted services on an
injected clock; they raise domain errors, never HTTP answers.
"""
