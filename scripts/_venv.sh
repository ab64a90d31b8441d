# Sourced by scripts/test (and the run script to come): create .venv on a fresh machine and keep
# it in step with pyproject.toml. Installs only when pyproject.toml changed or a needed extra is
# missing, so a second run costs a checksum, not a pip resolve.

find_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3 python; do
        [ -n "$candidate" ] || continue
        command -v "$candidate" >/dev/null 2>&1 || continue
        if "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "error: ThetaDesk needs Python >= 3.11 (set PYTHON=/path/to/python3.11)" >&2
    return 1
}

# ensure_venv [EXTRA]: EXTRA is "dev" for the test tools, empty for the runtime only.
ensure_venv() {
    local extra="${1:-}" stamp=".venv/.thetadesk-installed" python hash spec="."
    if [ ! -x .venv/bin/python ]; then
        python="$(find_python)"
        echo "setting up .venv with $("$python" --version)" >&2
        "$python" -m venv .venv
    fi
    hash="$(sha256sum pyproject.toml | cut -d' ' -f1)"
    # The stamp holds the pyproject.toml hash and the extra installed with it ("dev" or "-").
    if [ -f "$stamp" ] && [ "$(sed -n 1p "$stamp")" = "$hash" ]; then
        if [ -z "$extra" ] || [ "$(sed -n 2p "$stamp")" = "$extra" ]; then
            return 0
        fi
    fi
    # Keep the dev tools once they are in, so run and test do not undo each other.
    if [ -z "$extra" ] && [ -f "$stamp" ] && [ "$(sed -n 2p "$stamp")" = "dev" ]; then
        extra="dev"
    fi
    [ -n "$extra" ] && spec=".[${extra}]"
    echo "installing ThetaDesk ${spec} into .venv (first run, or pyproject.toml changed)" >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$spec"
    printf '%s\n%s\n' "$hash" "${extra:--}" > "$stamp"
}
