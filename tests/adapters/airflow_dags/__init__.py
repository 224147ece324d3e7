"""DAG files for tests/adapters/test_airflow.py (copied into the tests' own dags folder) and the
runner that executes them with ``dag.test()`` (``_run.py``)."""
