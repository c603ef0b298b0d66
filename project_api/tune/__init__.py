"""Autotuning of the integer kernels on the device (issue 12).

space.py    the knobs per kernel kind and the candidates of one layer (each bit-exact with the
            untuned kernel)
image.py    one firmware image holding many candidates of one kernel, chosen at run time by a
            selector input (one flash, many measurements)
runner.py   the measuring interface: ``Runner`` (a job in, one result per candidate out),
            ``LocalRunner`` through the Project API of any template; ``runner_for(args)``
records.py  JSON-lines tuning records: append, resume, best per kernel signature
tuner.py    the search: a cost model fitted to the measurements so far picks what to measure next
"""
