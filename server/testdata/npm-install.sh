# The openai npm package for server's real-client test (TestNodeSDK).
# .ci/run runs these lines before `go test`; locally: `. server/testdata/npm-install.sh`.
# Pinned: openai 6.30.1 is the newest release that supports Node 20
# (7.x, the newest line, requires Node >= 22).
export DSV32_NPM_PREFIX="${DSV32_NPM_PREFIX:-$HOME/.cache/dsv32/npm}"
if command -v npm >/dev/null 2>&1; then
  npm install --prefix "$DSV32_NPM_PREFIX" --no-audit --no-fund --silent openai@6.30.1 ||
    echo "warning: could not install the openai npm package; TestNodeSDK will skip"
else
  echo "warning: npm is not installed; TestNodeSDK will skip"
fi
