"""
Small generic helpers every layer may use: secrets that never print, bounded JSON, backoff
and task bookkeeping. They import nothing else of the agent.
"""
