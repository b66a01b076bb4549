"""Task bodies. Each module imports its heavy libraries inside functions: never at DAG-parse time."""
