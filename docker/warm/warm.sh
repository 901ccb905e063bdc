#!/bin/sh
# Warm the image's shared caches with tiny projects shaped like the exercises, so the
# first real test run of each language does not pay for compiling standard libraries,
# crates or Catch's main. Runs once, at image build time.
set -eux
export HOME=/tmp/warm-home PATH="/opt/localcode/bin:$PATH"
mkdir -p "$HOME"
w=/tmp/warm

# Rust: the three crates exercises use (gigasecond: time, grep: anyhow, simple-cipher: rand).
for spec in 'time = "0.3"' 'anyhow = "1.0"' 'rand = "0.8"'; do
    name="warm-$(echo "$spec" | cut -d' ' -f1)"
    mkdir -p "$w/$name/src"
    printf '[package]\nedition = "2021"\nname = "%s"\nversion = "0.1.0"\n\n[dependencies]\n%s\n' "$name" "$spec" > "$w/$name/Cargo.toml"
    echo '#[test] fn ok() {}' > "$w/$name/src/lib.rs"
    (cd "$w/$name" && cargo test -- --include-ignored)
done
# The 2024 edition (current Exercism Rust manifests) builds too.
mkdir -p "$w/warm-2024/src"
printf '[package]\nedition = "2024"\nname = "warm-2024"\nversion = "0.1.0"\n' > "$w/warm-2024/Cargo.toml"
echo '#[test] fn ok() { if let Some(x) = Some(1) && x > 0 {} }' > "$w/warm-2024/src/lib.rs"
(cd "$w/warm-2024" && cargo test -- --include-ignored)

# Go: compile the testing package and friends into GOCACHE.
mkdir -p "$w/go"
# go 1.26: what current Exercism Go exercises declare (trixie's own go 1.24 refuses it).
printf 'module warm\n\ngo 1.26\n' > "$w/go/go.mod"
printf 'package warm\n\nimport (\n\t"fmt"\n\t"strings"\n\t"testing"\n)\n\nfunc TestOk(t *testing.T) { _ = fmt.Sprint(strings.ToUpper("x")) }\n' > "$w/go/warm_test.go"
(cd "$w/go" && go test ./... && go test -json ./... >/dev/null)

# C++: an exercise-shaped project, so ccache holds Catch's main (test/tests-main.cpp).
mkdir -p "$w/cpp-warm/test"
cp /opt/localcode/cpp/catch.hpp /opt/localcode/cpp/tests-main.cpp "$w/cpp-warm/test/"
cp /opt/localcode/cpp/CMakeLists.txt "$w/cpp-warm/"
printf '#pragma once\nint warm();\n' > "$w/cpp-warm/cpp_warm.h"
printf '#include "cpp_warm.h"\nint warm() { return 1; }\n' > "$w/cpp-warm/cpp_warm.cpp"
printf '#include "cpp_warm.h"\n#ifdef EXERCISM_TEST_SUITE\n#include <catch2/catch.hpp>\n#else\n#include "test/catch.hpp"\n#endif\nTEST_CASE("warm") { REQUIRE(warm() == 1); }\n' > "$w/cpp-warm/cpp_warm_test.cpp"
(cd "$w/cpp-warm" && localcode-test-cpp)
ccache --show-stats || true

# JavaScript: jest's transform cache (babel with the Exercism preset).
mkdir -p "$w/js"
cp /opt/npm/package.json "$w/js/"
printf "module.exports = { presets: ['@exercism/babel-preset-javascript'], plugins: [] };\n" > "$w/js/babel.config.js"
printf 'export const add = (a, b) => a + b;\n' > "$w/js/warm.js"
printf "import { add } from './warm';\n\ndescribe('warm', () => {\n  test('adds', () => {\n    expect(add(1, 2)).toEqual(3);\n  });\n});\n" > "$w/js/warm.spec.js"
(cd "$w/js" && localcode-test-javascript)

# Java: prove the toolchain starts.
test -f "$JUNIT_CONSOLE"
for jar in $(echo "$JAVA_TEST_CLASSPATH" | tr ':' ' '); do test -f "$jar"; done

rm -rf "$w" "$HOME"
