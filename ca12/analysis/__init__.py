"""Analysis of trained runs, as library code that commands and notebooks call.

The comparison of runs over seeds behind `python -m ca12.compare`: runs.py reads and groups run
directories, statistics.py holds rliable's estimates, report.py compares the groups (`compare` ->
`Comparison`), outputs.py and plots.py write report.md, summary.json and the plots and log them to W&B.
"""
