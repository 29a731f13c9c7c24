#!/usr/bin/env bash
# Build and test the seprt Java core; build the Android demo APK.
#
#   android_demo/build.sh test   core: compile (javac --release 8), jar, JUnit 5 tests. Prints
#                                "N passed, N failed"; exits non-zero on any failure. Never skips.
#   android_demo/build.sh apk    signed debug APK (aapt2, dx, zipalign, apksigner); skipped with
#                                a message (exit 0) where the tools cannot be installed.
#   android_demo/build.sh        both
#
# Needs: a JDK (javac, jar, keytool); Debian package junit5 (installed here when missing, as
# root); for the golden models, the repo's Python with seprt (.venv/bin/python, or $SEPRT_PYTHON).
# APK: Debian packages aapt (aapt2), apksigner, zipalign from this release, and dalvik-exchange
# (dx) + libandroid-23-java (android.jar) from Debian bullseye, fetched with `apt-get download`
# under a private apt configuration in build/ (the system's sources are not touched).
# Outputs go to android_demo/build/ (ignored by git): seprt-core.jar, seprt-demo.apk.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
B="$HERE/build"
JUNIT=/usr/share/java/junit-platform-console-standalone.jar
CORE_SRC="$HERE/core/src/main/java"
TEST_SRC="$HERE/core/src/test/java"

log() { printf '== %s\n' "$*"; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }
is_root() { [ "$(id -u)" = 0 ]; }

apt_install() {   # apt_install PKG...: install from the system's sources (root only)
    is_root || return 1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1 && return 0
    apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1
}

compile_core() {
    command -v javac >/dev/null || die "javac not found: install a JDK (Debian: default-jdk-headless)"
    rm -rf "$B/core/classes" && mkdir -p "$B/core/classes"
    javac --release 8 -Xlint:all -Werror -encoding UTF-8 -d "$B/core/classes" $(find "$CORE_SRC" -name '*.java')
    printf 'Main-Class: ai.seprt.core.Main\n' > "$B/core/manifest.txt"
    jar --create --file "$B/seprt-core.jar" --manifest "$B/core/manifest.txt" -C "$B/core/classes" .
    log "built $B/seprt-core.jar"
}

find_python() {
    for py in "${SEPRT_PYTHON:-}" "$ROOT/.venv/bin/python" python3; do
        if [ -n "$py" ] && "$py" -c 'import seprt' >/dev/null 2>&1; then
            echo "$py"
            return 0
        fi
    done
    return 1
}

cmd_test() {
    if [ ! -f "$JUNIT" ]; then
        log "installing junit5 (Debian) for $JUNIT"
        apt_install junit5 || die "$JUNIT is missing: apt-get install junit5 (as root)"
    fi
    compile_core
    rm -rf "$B/core/test-classes" && mkdir -p "$B/core/test-classes"
    javac --release 8 -Xlint:all -encoding UTF-8 -cp "$B/core/classes:$JUNIT" -d "$B/core/test-classes" \
        $(find "$TEST_SRC" -name '*.java')

    py=$(find_python) || die "no Python with seprt importable (tried \$SEPRT_PYTHON, $ROOT/.venv/bin/python, python3): \
it regenerates the random test models"
    # the BQ test models' calibration (float32 numpy) differs in its last bits between CPUs
    # (AVX2 vs AVX-512): models and golden logits are made here, on the machine under test
    log "regenerating the random test models and their golden data ($py android_demo/make_golden.py --out)"
    "$py" "$HERE/make_golden.py" --out "$B/testdata" --models-out "$B/testmodels" >/dev/null

    log "JUnit 5"
    local out rc=0
    out=$(cd "$ROOT" && java -Dseprt.testdata="$B/testdata" -Dseprt.testmodels="$B/testmodels" \
        -Dseprt.samples="$ROOT/seprt/data/samples" -jar "$JUNIT" \
        -cp "$B/core/classes:$B/core/test-classes" --scan-classpath --disable-banner --details=tree \
        --disable-ansi-colors --reports-dir "$B/test-reports" 2>&1) || rc=$?
    printf '%s\n' "$out"
    local passed failed
    passed=$(printf '%s\n' "$out" | sed -n 's/^\[ *\([0-9]*\) tests successful *\]$/\1/p')
    failed=$(printf '%s\n' "$out" | sed -n 's/^\[ *\([0-9]*\) tests failed *\]$/\1/p')
    [ -n "$passed" ] && [ -n "$failed" ] || die "could not read the JUnit summary (exit code $rc)"
    log "command line: java -jar build/seprt-core.jar seprt/data/demo.bin seprt/data/samples/cat-4774.jpg"
    java -jar "$B/seprt-core.jar" "$ROOT/seprt/data/demo.bin" "$ROOT/seprt/data/samples/cat-4774.jpg" || rc=1
    echo "$passed passed, $failed failed"
    [ "$rc" = 0 ] && [ "$failed" = 0 ] && [ "$passed" -gt 0 ]
}

# ---------------------------------------------------------------- APK

BULLSEYE_PKGS="dalvik-exchange libandroid-23-java"

fetch_bullseye_tools() {   # dx.jar and android.jar (API 23) from Debian bullseye into $T
    local apt="$B/apt-bullseye"
    mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/debs"
    echo "deb http://deb.debian.org/debian bullseye main" > "$apt/sources.list"
    local opts=(-o Dir::Etc::sourcelist="$apt/sources.list" -o Dir::Etc::sourceparts=- \
        -o Dir::State::Lists="$apt/lists" -o Dir::Cache="$apt/cache" -o APT::Sandbox::User=root -qq)
    apt-get "${opts[@]}" update >/dev/null 2>&1 || return 1
    (cd "$apt/debs" && apt-get "${opts[@]}" download $BULLSEYE_PKGS >/dev/null 2>&1) || return 1
    mkdir -p "$T/root"
    for deb in "$apt"/debs/*.deb; do dpkg-deb -x "$deb" "$T/root" || return 1; done
}

cmd_apk() {
    T="$B/android-tools"
    local dx_jar="$T/root/usr/share/java/com.android.dx.jar"
    local android_jar="$T/root/usr/share/java/com.android.android-23.jar"
    local missing=""
    for tool in aapt2 aapt zipalign apksigner keytool; do command -v $tool >/dev/null || missing="$missing $tool"; done
    if [ -n "$missing" ]; then
        log "installing Debian packages aapt apksigner zipalign (missing:$missing)"
        if ! apt_install aapt apksigner zipalign; then
            echo "SKIP apk: missing$missing and cannot install them (needs root and Debian's aapt, apksigner, zipalign)"
            return 0
        fi
    fi
    if [ ! -f "$dx_jar" ] || [ ! -f "$android_jar" ]; then
        log "fetching $BULLSEYE_PKGS from Debian bullseye (apt-get download, private apt config in $B/apt-bullseye)"
        if ! fetch_bullseye_tools || [ ! -f "$dx_jar" ] || [ ! -f "$android_jar" ]; then
            echo "SKIP apk: cannot fetch the dexer and android.jar ($BULLSEYE_PKGS from Debian bullseye)"
            return 0
        fi
    fi
    local A="$B/app"
    rm -rf "$A" && mkdir -p "$A/assets" "$A/gen" "$A/dex-in" "$A/dex"
    cp "$ROOT/seprt/data/demo.bin" "$A/assets/demo.bin"
    log "aapt2: resources and manifest (minSdk 23)"
    aapt2 compile --dir "$HERE/app/res" -o "$A/res.zip"
    aapt2 link -I "$android_jar" --manifest "$HERE/app/AndroidManifest.xml" --min-sdk-version 23 \
        --target-sdk-version 23 --version-code 1 --version-name 0.1 -A "$A/assets" --java "$A/gen" \
        -o "$A/unsigned.apk" "$A/res.zip"
    # app and core (less the desktop CLI) compiled against android-23's java.* classes, so that any
    # use of an API newer than minSdk 23 (e.g. Float.isFinite) fails here rather than on a phone
    log "javac against android.jar (API 23) and dx"
    javac -source 8 -target 8 -bootclasspath "$android_jar" -Xlint:all,-options -encoding UTF-8 -d "$A/dex-in" \
        $(find "$CORE_SRC" -name '*.java' ! -name Main.java) $(find "$HERE/app/src" "$A/gen" -name '*.java')
    java -jar "$dx_jar" --dex --min-sdk-version=23 --output="$A/dex/classes.dex" "$A/dex-in"
    (cd "$A/dex" && zip -q -j "$A/unsigned.apk" classes.dex)
    zipalign -f 4 "$A/unsigned.apk" "$A/aligned.apk"
    if [ ! -f "$B/debug.keystore" ]; then
        log "generating a debug key (build/debug.keystore, never committed)"
        keytool -genkeypair -keystore "$B/debug.keystore" -storepass android -keypass android \
            -alias androiddebugkey -dname "CN=Android Debug,O=Android,C=US" -keyalg RSA -keysize 2048 \
            -validity 10000 >/dev/null 2>&1
    fi
    apksigner sign --ks "$B/debug.keystore" --ks-pass pass:android --key-pass pass:android \
        --out "$B/seprt-demo.apk" "$A/aligned.apk"
    log "apksigner verify"
    apksigner verify --verbose "$B/seprt-demo.apk" | head -5
    log "aapt2 dump badging"
    aapt2 dump badging "$B/seprt-demo.apk" | grep -E "^(package|sdkVersion|targetSdkVersion|application-label|launchable-activity)"
    unzip -l "$B/seprt-demo.apk" | grep -E "classes.dex|assets/demo.bin"
    log "built $B/seprt-demo.apk ($(stat -c %s "$B/seprt-demo.apk") bytes)"
}

case "${1:-all}" in
    test) cmd_test ;;
    apk) cmd_apk ;;
    all) cmd_test && cmd_apk ;;
    *) die "usage: $0 [test|apk|all]" ;;
esac
