"""LIBERO simulation: task environments (``libero_env``), a scripted expert with privileged state (``expert``) and
the demonstration recorder behind the ``demos`` stage (``demos``, ``hdf5``).

Importing this package is light; LIBERO, robosuite and MuJoCo load inside the functions that need them (and only
after ``libero_env.prepare_rendering()`` picked a headless OpenGL backend).
"""
