"""The OpenMeter-compatible API's domain: pure mappings between OpenMeter's shapes
(CloudEvents, Meter, meter queries) and meterd's own; `meterd.http.openmeter` serves them."""
