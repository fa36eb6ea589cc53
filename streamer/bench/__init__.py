"""``emotrack bench``: the daemon's own code for N concurrent paced streams, measured end to end.

``session`` runs an invocation (single runs, sweeps, ``--find-max``, ``--compare``); ``runner`` runs one
trial as a daemon process (``trial``) plus a subscriber process (``subscriber``) against a real broker
(``broker``) on generated or corpus audio (``audio``); ``metrics`` turns receipts into figures;
``engines`` holds the timed engine wrapper and the research-way torch backend; ``standin`` builds
random-weight engines to measure before a trained one exists.
"""
