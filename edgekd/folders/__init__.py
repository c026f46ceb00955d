"""Run-folder adapters of the stages that read other stages' results.

A pure stage (`bench_models`, `export_model`, ...) takes objects and returns a typed result. An
adapter here reads what an earlier stage left in a run folder (its typed result, schema-version
checked), calls the pure stage, and writes and records what it produced. The adapters sit above
every stage package, so the stages never import one another to find their inputs.
"""
