"""
The web side: the application API and the operations API (Klein), the site with its
deadlines and limits, blocking queries, metrics, and the one place where domain errors
become HTTP answers.
"""
