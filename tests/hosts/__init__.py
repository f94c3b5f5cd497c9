"""Test hosts: private networks in network namespaces, for tests and benchmarks (root needed).

``netns.test_hosts()``: two hosts joined by a veth pair (WebRTC server and client).
``ray_cluster.local_cluster()``: a throwaway multi-node Ray cluster, optionally a host per node.
Importable as ``hosts`` with ``tests/`` on ``sys.path`` (pytest puts it there; benchmarks add it).
"""
