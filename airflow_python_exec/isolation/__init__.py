"""What confines a run: processes and their containment, the bubblewrap sandbox, files a job can
write, bounded JSON, archive rules, and the worker's base environment."""
