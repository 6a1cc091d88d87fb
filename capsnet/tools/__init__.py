"""The maintainers' tools, apart from the library: benchmarks (`bench`, `stepprofile`, `photos`), shipping a run as
an asset (`publish`) and the prepared GPU check (`gpu_check`)."""
