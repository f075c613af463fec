"""Speed and memory of Sideways against BP, side by side: `make bench`.

python -m train.benchmark                       # the reference workload, several minutes
python -m train.benchmark --quick --json /tmp/bench.json   # CI-sized
"""

from absl import app, flags

from keras_sideways import benchmark

_QUICK = flags.DEFINE_bool("quick", False, "Run a CI-sized version.")
_JSON = flags.DEFINE_string("json", "bench/results.json", "Where to write the results.")
_DOCS = flags.DEFINE_string("docs", "", "Also write the figures as markdown here.")


def main(argv):
    del argv
    workload = benchmark.Workload.quick() if _QUICK.value else benchmark.Workload()
    results = benchmark.run_benchmark(workload, log=lambda message: print(message, flush=True))
    benchmark.write_json(results, _JSON.value)
    print()
    print(benchmark.format_table(results))
    print(f"\nresults: {_JSON.value}")
    if _DOCS.value:
        command = "make bench" if not _QUICK.value else "python -m train.benchmark --quick"
        with open(_DOCS.value, "w") as f:
            f.write(benchmark.format_markdown(results, command))
        print(f"report: {_DOCS.value}")


if __name__ == "__main__":
    app.run(main)
