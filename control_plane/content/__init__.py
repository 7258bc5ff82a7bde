"""Registry content: repositories, blobs, manifests, tags, uploads and events, indexed in the database and
stored in the registry's container."""
