"""Ray actors: thin shells that hold a thetadesk component and route messages.

Each class is plain Python (a unit test can construct it); the supervisor applies
``ray.remote(...)`` with names, restarts and placement when it spawns them.
"""
