"""What `make bench`, `make faults` and `make consistency` share; each script keeps only its
scenarios and verdicts.

env.py       the environment of the app a harness serves (bench settings, throwaway secrets)
tools.py     the programs a harness needs, checked (and wrk installed) before it starts
procs.py     Harness: a temp dir, ports, a redis-server, gunicorn, every process it started
postgres.py  the benchmark's own databases on a Postgres server
cpu.py       CpuWatch: how busy the rest of the machine was during a measurement
results.py   versions, commit, the results files and the README's block
stats.py     the percentile every report uses
"""
