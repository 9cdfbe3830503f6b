#!/bin/sh
# Render Alertmanager's configuration from its template and the SMARTBY_ALERT_*
# environment:  render.sh TEMPLATE OUTPUT
#
# ${NAME} is replaced by the variable's value (empty when unset); the lines between
# `#if NAME` and `#endif` are kept only when NAME is set.  Values go into quoted YAML
# strings, so one with a double quote or a backslash is refused.  POSIX sh and awk:
# the prom/alertmanager image has busybox's.
set -eu

template=$1
output=$2

die() { echo "alertmanager config: $*" >&2; exit 1; }

if [ -n "${SMARTBY_ALERT_EMAIL_TO:-}" ]; then
  [ -n "${SMARTBY_ALERT_SMTP_HOST:-}" ] || die "SMARTBY_ALERT_EMAIL_TO is set: set SMARTBY_ALERT_SMTP_HOST (host:port) too"
  [ -n "${SMARTBY_ALERT_EMAIL_FROM:-}" ] || die "SMARTBY_ALERT_EMAIL_TO is set: set SMARTBY_ALERT_EMAIL_FROM too"
fi
: "${SMARTBY_ALERT_SMTP_REQUIRE_TLS:=true}"
case "$SMARTBY_ALERT_SMTP_REQUIRE_TLS" in
  true|false) ;;
  *) die "SMARTBY_ALERT_SMTP_REQUIRE_TLS must be true or false" ;;
esac
export SMARTBY_ALERT_SMTP_REQUIRE_TLS
if [ -z "${SMARTBY_ALERT_EMAIL_TO:-}" ] && [ -z "${SMARTBY_ALERT_WEBHOOK_URL:-}" ]; then
  echo "alertmanager config: no SMARTBY_ALERT_EMAIL_TO or SMARTBY_ALERT_WEBHOOK_URL: alerts are only listed, not sent" >&2
fi

awk '
  BEGIN { keep = 1 }
  /^#if [A-Z_][A-Z0-9_]*$/ { keep = (ENVIRON[$2] != ""); next }
  /^#endif$/ { keep = 1; next }
  !keep { next }
  {
    line = $0; out = ""
    while (match(line, /\$\{[A-Z_][A-Z0-9_]*\}/)) {
      name = substr(line, RSTART + 2, RLENGTH - 3)
      value = ENVIRON[name]
      if (index(value, "\"") || index(value, "\\")) {
        printf "alertmanager config: %s holds a double quote or a backslash\n", name > "/dev/stderr"
        exit 1
      }
      out = out substr(line, 1, RSTART - 1) value
      line = substr(line, RSTART + RLENGTH)
    }
    print out line
  }
' "$template" > "$output" || die "could not render $template"
