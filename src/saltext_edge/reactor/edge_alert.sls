{#-
saltext-edge alert reactor (docs/howto/site-goes-dark.rst).

`saltext-edge master-config --write` copies it next to edge_auth.sls and
lists it in master.d/edge.conf for edge/node/*/offline, edge/node/*/online,
edge/site/*/degraded and edge/site/*/recovered. It posts one JSON document
per transition to edge:alerts:url (master config) with Salt's http.query
runner, and does nothing while that is unset.

It acts only on events the master's own edge_fleet engine fired:
salt['edge.event_verified'] checks the event's MAC, made with a key that only
the master's processes can read (<pki_dir>/edge/event.key). Any accepted
minion can fire these tags with any data; such an event renders to nothing.
-#}
{%- set url = salt['config.get']('edge:alerts:url', '') %}
{%- if url and salt['edge.event_verified'](tag, data) %}
{%- set body = {
      "event": tag,
      "kind": tag.split('/')[-1],
      "node": data.get('id'),
      "site": data.get('site'),
      "last_seen": data.get('last_seen'),
      "reason": data.get('reason'),
      "offline": data.get('offline'),
      "master": data.get('master'),
    } %}
edge-alert:
  runner.http.query:
    - args:
      - url: {{ url | tojson }}
      - method: POST
      - header_dict: {"Content-Type": "application/json"}
      - data: {{ body | tojson | tojson }}
{%- endif %}
