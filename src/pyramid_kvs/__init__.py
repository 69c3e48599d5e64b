"""pyramid_kvs: key-value-store services for Pyramid applications."""
