"""
The fleet's views for people and dashboards: the Prometheus metrics the
``edge_fleet`` engine serves (``metrics_catalogue``, ``metrics_collector``,
``metrics_server``) and the self-contained HTML fleet page ``salt-run
edge.report html=PATH`` writes (``page_parts``, ``page``, ``page_example``);
``numbers`` reads the numbers both of them show.
"""
