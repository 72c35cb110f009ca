{#-
saltext-edge alert reactor (docs/howto/site-goes-dark.rst).

`saltext-edge master-config --write` copies it next to edge_auth.sls and
lists it in master.d/edge.conf for edge/node/*/offline, edge/node/*/online,
edge/site/*/degraded and edge/site/*/recovered. For each, the runner
edge.alert posts one JSON document to edge:alerts:url (master config: the
URL is never a job argument); nothing happens while that is unset.

It acts only on events the master's own edge_fleet engine fired:
salt['edge.event_verified'] checks the event's MAC, made with a key that only
the master's processes can read (<pki_dir>/edge/event.key). Any accepted
minion can fire these tags with any data; such an event renders to nothing
(no job), and edge.alert checks the seal again before it posts.
-#}
{%- if salt['config.get']('edge:alerts:url', '') and salt['edge.event_verified'](tag, data) %}
edge-alert:
  runner.edge.alert:
    - args:
      - event: {{ {"tag": tag, "data": data} | tojson | tojson }}
{%- endif %}
