"""Remote run stores: runs shared through S3-compatible object storage or a shared filesystem.

    <root>/runs/<run_id>/manifest.yaml          the run's manifest, byte for byte; written last
    <root>/runs/<run_id>/files.json             the run's other files: path -> blake3 hash, size
    <root>/blobs/blake3/<hh>/<hex>              every file's content, stored once by its hash

Every write is create-only (S3 `If-None-Match: *`, O_EXCL + link on a filesystem), so two
pushes of one run are idempotent, nothing can overwrite a run, and a push killed midway leaves
blobs nobody sees (no manifest) that the next push reuses. store.py holds the interface and the
`file://` backend, s3.py the `s3://` one (the only boto3 user), layout.py what a pushed run is.
"""
