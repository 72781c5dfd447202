"""The researcher's dashboard and the study report.

The dashboard is an admin client like the CLI: it reaches the coordinator only through
:class:`medfed.coordinator.client.AdminClient` over mutual TLS with the researcher's certificate,
and adds no port to the coordinator. ``views`` turns what the admin API returns into the JSON
both the pages and the report draw; ``app`` serves it (FastAPI), ``server`` binds it safely,
``report`` writes a self-contained HTML + JSON report with ``svg`` charts.
"""
