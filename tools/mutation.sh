#!/usr/bin/env bash
# Mutation testing of one module against the tests that cover it, within a time budget.
#
#   tools/mutation.sh MODULE [BUDGET_S] [MUTANT_GLOB...]      e.g. tools/mutation.sh atomic 300
#
# MODULE: a path under harmonize_cli/ without ".py" (atomic, evaluation/report, apply/resolution ...).
# Its test files are listed in tools/mutation_targets.txt; mutants judged equivalent (with the
# reason) in tools/mutation_equivalent.txt. Needs the dev extra: pip install -e '.[dev]' (mutmut 3).
# The mutants are made in a scratch copy of the project, never in the checkout, so a run stopped by
# the budget (or Ctrl-C) changes nothing here. Prints the score (killed / all mutants that are not
# judged equivalent) and every surviving mutant as a diff, to kill with a new test or to judge
# equivalent. A run cut short by the budget says how many mutants it did not reach. A mutant whose
# tests run past 15 x their normal time + 10 s counts as killed (timeout), as mutmut counts it. Not run in CI.
# MUTANT_GLOB (optional, mutmut 3's fnmatch names): run only those mutants, to finish a module in
# parts or re-check its survivors, e.g. 'x_compose_pct__mutmut_*' or 'xǁColourMapǁapply_255*' (a
# glob without "harmonize_cli." is taken inside MODULE); the others count as not reached.
# MUTATION_RESULTS=FILE keeps every mutant's state (NAME<TAB>STATE) there, to combine such parts.
# pytest's temporary folders stay in the scratch copy (TMPDIR; with MUTATION_JOBS=1 one --basetemp).
# pytest's unraisableexception plugin is off: its gc.collect() x 5 at the end of every session took
# 3.6 of the 3.7 s each mutant cost on the loaded VM (torch's heap), ten times the tests themselves.
set -euo pipefail
results_out="${MUTATION_RESULTS:+$(realpath -m "$MUTATION_RESULTS")}"
cd "$(dirname "$0")/.."
root="$PWD"
module="${1:?usage: tools/mutation.sh MODULE [BUDGET_S] [MUTANT_GLOB...]  (MODULE: e.g. atomic, evaluation/report)}"
budget="${2:-600}"
shift $(( $# < 2 ? $# : 2 ))
module="${module%.py}"; module="${module#harmonize_cli/}"
source_file="harmonize_cli/$module.py"
globs=()
for glob in "$@"; do
    case "$glob" in harmonize_cli.*) globs+=("$glob") ;; *) globs+=("harmonize_cli.${module//\//.}.$glob") ;; esac
done
[ -f "$source_file" ] || { echo "mutation: no module $source_file" >&2; exit 2; }
tests="$(awk -v m="$module" '$1 == m { $1 = ""; print substr($0, 2) }' tools/mutation_targets.txt)"
[ -n "$tests" ] || { echo "mutation: $module has no line in tools/mutation_targets.txt (MODULE TEST_FILES...)" >&2; exit 2; }
python -c "import mutmut" 2>/dev/null || { echo "mutation: mutmut is missing; pip install -e '.[dev]'" >&2; exit 2; }

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cp -r harmonize_cli tests examples setup.cfg pyproject.toml "$scratch"/
cd "$scratch"
quoted() { printf '"%s", ' "$@"; }
# shellcheck disable=SC2086
cat >> pyproject.toml <<TOML

[tool.mutmut]
source_paths = ["harmonize_cli"]
only_mutate = ["$source_file"]
also_copy = ["tests", "examples"]
pytest_add_cli_args_test_selection = [$(quoted $tests)]
pytest_add_cli_args = ["-p", "no:cacheprovider", "-p", "no:unraisableexception", "-m", "not slow", "-x"]
process_isolation = "forkserver"
timeout_constant = 10.0
TOML
export HARMONIZE_HOME="$scratch/.home" XDG_CONFIG_HOME="$scratch/.config" HARMONIZE_OFFLINE=1
# every mutant is a pytest session with its own temporary folder (66 MB for apply/harmonizer's tests:
# a checkpoint and a cache), which pytest keeps for days: they go under the scratch folder, removed
# at the end; one mutant at a time, each session's --basetemp replaces the previous one's
export TMPDIR="$scratch/tmp"
mkdir -p "$TMPDIR"
if [ "${MUTATION_JOBS:-2}" = 1 ]; then export PYTEST_ADDOPTS="${PYTEST_ADDOPTS:-} --basetemp=$scratch/tmp/pytest"; fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" PYTHONWARNINGS="ignore::UserWarning"
only=""
if [ ${#globs[@]} -gt 4 ]; then only="; ${#globs[@]} mutant names/globs"; elif [ ${#globs[@]} -gt 0 ]; then only="; mutants ${globs[*]}"; fi
echo "mutation: $source_file against $tests (budget ${budget}s)$only"
started=$(date +%s)
set +e
timeout --signal=INT --kill-after=30 "$budget" python -m mutmut run --max-children "${MUTATION_JOBS:-2}" \
    ${globs[@]+"${globs[@]}"} >"$scratch/run.log" 2>&1
status=$?
set -e
elapsed=$(( $(date +%s) - started ))
python -m mutmut results --all true 2>/dev/null | sed -n 's/^ *\(harmonize_cli[^:]*\): \(.*\)$/\1\t\2/p' >"$scratch/results.tsv" || true
if [ -n "$results_out" ]; then cp "$scratch/results.tsv" "$results_out"; fi
python - "$scratch/results.tsv" "$root/tools/mutation_equivalent.txt" "$elapsed" "$status" <<'PY'
import sys
from collections import Counter
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if "\t" in line]
equivalent = {}
for line in open(sys.argv[2]):
    if line.strip() and not line.startswith("#"):
        name, _, why = line.strip().partition(" ")
        equivalent[name] = why.strip()
status = Counter(state for _, state in rows)
reached = [(name, state) for name, state in rows if state not in ("not checked", "check was interrupted by user")]
judged = [name for name, state in reached if state != "killed" and name in equivalent]
killed = sum(1 for _, state in reached if state in ("killed", "timeout", "segfault", "caught by type check"))
counted = len(reached) - len(judged)
print(f"mutation: {sys.argv[3]} s (mutmut exit {sys.argv[4]}); mutants {len(rows)}, reached {len(reached)}, "
      f"not reached {len(rows) - len(reached)}")
print("mutation: " + ", ".join(f"{state} {count}" for state, count in sorted(status.items())))
if counted:
    print(f"mutation: score {100.0 * killed / counted:.1f} % ({killed} killed of {counted} reached and not "
          f"judged equivalent; {len(judged)} judged equivalent)")
survivors = [name for name, state in reached if state not in ("killed", "timeout", "segfault", "caught by type check")
             and name not in equivalent]
untested = sorted({name.rsplit("__mutmut_", 1)[0] for name, state in reached if state == "no tests"})
if untested:  # functions that none of the listed test files calls: every mutant of theirs survives
    print("mutation: functions no listed test calls: " + ", ".join(untested))
open(sys.argv[1] + ".survivors", "w").write("\n".join(n for n in survivors if dict(reached)[n] != "no tests"))
PY
while read -r name || [ -n "$name" ]; do
    [ -n "$name" ] || continue
    echo "---- survived: $name"
    python -m mutmut show "$name" 2>/dev/null | grep '^[-+][^-+]' || true
done <"$scratch/results.tsv.survivors"
if [ ! -s "$scratch/results.tsv" ]; then tail -30 "$scratch/run.log"; fi
