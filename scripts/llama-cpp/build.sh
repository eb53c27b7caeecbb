#!/usr/bin/env bash
# Build llama.cpp's native tools (llama-tokenize, llama-bench, llama-server, llama-simple) from
# the llama.cpp tree vendored in the `llama-cpp-python` source package on PyPI.
#
# They are the reference the `llm` crate is checked and benchmarked against: token-id fixtures
# (scripts/llama-cpp/tokenizer-fixture.py) and the engine benchmark. Nothing built here is ever
# committed; it all lives in a cache directory outside the repository.
#
# Usage: scripts/llama-cpp/build.sh            # prints the bin directory on its last line
# Environment:
#   LLAMA_CPP_PYTHON_VERSION  sdist version to build from (default 0.3.36)
#   LADDER_LLAMA_CPP_DIR      cache root (default ~/.cache/ladder/llama.cpp)
#   LLAMA_CPP_JOBS            parallel build jobs (default 2)
#   LLAMA_CPP_TARGETS         space-separated CMake targets (default: see below)
# Re-running with the binaries already built does nothing but print the bin directory.
set -euo pipefail

version="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
root="${LADDER_LLAMA_CPP_DIR:-$HOME/.cache/ladder/llama.cpp}/$version"
jobs="${LLAMA_CPP_JOBS:-2}"
targets="${LLAMA_CPP_TARGETS:-llama-tokenize llama-bench llama-server llama-simple llama-cli}"
src="$root/src"
build="$root/build"
bin="$build/bin"

log() { echo "build.sh: $*" >&2; }

# The CMake arguments; a build made with other arguments is rebuilt.
#
# AMX is switched off: on these VMs the CPU reports AMX and the kernel grants tile data,
# yet ggml's AMX kernels die with SIGILL (tinygemm_kernel_amx, `tilezero`) as soon as a
# batch is computed (llama-server's warm-up, prompt processing). GCC gives explicit
# -mno-* flags precedence over the ones -march=native implies, so the order is irrelevant.
cmake_args=(
    -G Ninja
    -DCMAKE_BUILD_TYPE=Release
    -DGGML_NATIVE=ON
    "-DCMAKE_C_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    "-DCMAKE_CXX_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    -DBUILD_SHARED_LIBS=OFF
    -DLLAMA_CURL=OFF
    -DLLAMA_OPENSSL=OFF
    -DLLAMA_BUILD_TESTS=OFF
    -DLLAMA_BUILD_EXAMPLES=OFF
    -DLLAMA_USE_PREBUILT_UI=OFF
)
fingerprint="$(printf '%s\n' "${cmake_args[@]}")"

all_built() {
    # .complete holds the CMake arguments of the last successful build; .targets lists every
    # target built with them, .undefined the asked-for targets this version does not define.
    [[ -f "$root/.complete" && -f "$root/.targets" ]] || return 1
    [[ "$(cat "$root/.complete")" == "$fingerprint" ]] || return 1
    local t
    for t in $targets; do
        if grep -qx "$t" "$root/.targets"; then
            [[ -x "$bin/$t" ]] || return 1
        elif [[ -f "$root/.undefined" ]] && grep -qx "$t" "$root/.undefined"; then
            continue
        else
            return 1
        fi
    done
}

if all_built; then
    log "llama.cpp (llama-cpp-python $version) already built in $bin"
    echo "$bin"
    exit 0
fi

mkdir -p "$root"

# 1. Build tools first: with a system cmake and ninja present, pip's metadata step for the
# scikit-build-core sdist does not ask for (and build from source) the `cmake` and `ninja` packages.
need=()
command -v cmake >/dev/null || need+=(cmake)
command -v ninja >/dev/null || need+=(ninja-build)
if ((${#need[@]})); then
    log "installing ${need[*]} with apt-get"
    if [[ $(id -u) -eq 0 ]]; then sudo=""; else sudo="sudo"; fi
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# 2. The source package, once.
if [[ ! -f "$src/CMakeLists.txt" ]]; then
    dl="$root/sdist"
    mkdir -p "$dl"
    if ! ls "$dl"/llama_cpp_python-"$version".tar.gz >/dev/null 2>&1; then
        log "downloading llama-cpp-python $version source package from PyPI"
        # Only llama-cpp-python itself must be a source package; its build backend
        # (scikit-build-core) may come as a wheel, which is much faster than building it.
        python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python \
            --dest "$dl" "llama-cpp-python==$version" \
            || { log "pip download failed; check that PyPI is reachable and version $version exists"; exit 1; }
    fi
    sdist="$(ls "$dl"/llama_cpp_python-"$version".tar.gz)"
    tmp="$root/extract.tmp"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    log "extracting vendor/llama.cpp from $(basename "$sdist")"
    tar -xzf "$sdist" -C "$tmp" "llama_cpp_python-$version/vendor/llama.cpp"
    rm -rf "$src"
    mv "$tmp/llama_cpp_python-$version/vendor/llama.cpp" "$src"
    rm -rf "$tmp"
fi


# 3. Configure (again, if the arguments changed) and build.
if [[ ! -f "$build/build.ninja" || "$(cat "$root/.configured" 2>/dev/null)" != "$fingerprint" ]]; then
    log "configuring in $build"
    rm -f "$root/.complete"
    cmake -S "$src" -B "$build" "${cmake_args[@]}" >&2
    printf '%s' "$fingerprint" >"$root/.configured"
fi

# Only ask for targets this llama.cpp version defines (llama-cli/llama-simple move around).
available="$(cmake --build "$build" --target help 2>/dev/null | sed -n 's/^\([^:]*\):.*/\1/p')"
want=()
undefined=()
for t in $targets; do
    if grep -qx "$t" <<<"$available"; then
        want+=("$t")
    else
        log "target $t is not defined in this llama.cpp version; skipping it"
        undefined+=("$t")
    fi
done
((${#want[@]})) || { log "none of the targets ($targets) exist"; exit 1; }

log "building ${want[*]} with $jobs jobs (about 20 minutes on 2 cores)"
nice -n 10 cmake --build "$build" --parallel "$jobs" --target "${want[@]}" >&2

for t in "${want[@]}"; do
    [[ -x "$bin/$t" ]] || { log "expected $bin/$t after the build, not found"; exit 1; }
done
# Keep what earlier runs with the same arguments built (a run may ask for a subset).
if [[ "$(cat "$root/.complete" 2>/dev/null)" == "$fingerprint" && -f "$root/.targets" ]]; then
    old_targets="$(cat "$root/.targets")"
else
    old_targets=""
fi
printf '%s\n' $old_targets "${want[@]}" | sort -u >"$root/.targets"
printf '%s\n' "${undefined[@]}" | sed '/^$/d' | sort -u >"$root/.undefined"
printf '%s' "$fingerprint" >"$root/.complete"
log "built in $bin"
echo "$bin"
