"""The sides of the comparison, one module per environment.

Each builds, for a scenario's *kind*, the application of its library serving the
views of ``benchmarks.views`` (``BUILDERS``), plus the measurements that are not
request streams (``CALLS``).  ``ours`` runs in the development virtualenv;
``anchors`` (pyramid_session_redis, limits, dogpile.cache) and ``kvs1`` (the
original pyramid-kvs 1.0.0) in environments of their own.
"""
