"""Lakehouse core: config, session, Delta I/O, the job report and the job registry."""
