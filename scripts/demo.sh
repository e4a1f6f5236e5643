#!/usr/bin/env bash
# The whole ehrca story against a running service (`make run`), with curl, openssl
# and the Maildir outbox only: apply → approve → download codes from the outbox →
# collect one certificate from an `openssl req` CSR and one as PKCS#12 → mTLS
# whoami with each → revoke one → the CRL lists it → it is refused, the other works.
#
# Settings: EHRCA_DEMO_API (default http://127.0.0.1:8000), EHRCA_DEMO_MTLS
# (default https://127.0.0.1:8443), EHRCA_DEMO_OUTBOX (default var/outbox),
# EHRCA_DEMO_REVIEWER / _SECURITY (officer name:password, created by `make demo`).
set -euo pipefail

API=${EHRCA_DEMO_API:-http://127.0.0.1:8000}
MTLS=${EHRCA_DEMO_MTLS:-https://127.0.0.1:8443}
OUTBOX=${EHRCA_DEMO_OUTBOX:-var/outbox}
REVIEWER=${EHRCA_DEMO_REVIEWER:-demo-reviewer:demo-reviewer-password}
SECURITY=${EHRCA_DEMO_SECURITY:-demo-security:demo-security-password}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ehrca-demo.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
PASSWORD='clinic-password-2026'

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
json_field() { sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p"; }
# api METHOD PATH [TOKEN] [curl args...]: prints the body, fails on HTTP >= 400.
api() {
  local method=$1 path=$2 token=${3:-}; shift 3 || shift $#
  local auth=()
  [ -n "$token" ] && auth=(-H "Authorization: Bearer $token")
  local status
  status=$(curl -sS -o "$WORK/body" -w '%{http_code}' -X "$method" "${auth[@]}" "$@" "$API$path")
  if [ "$status" -ge 400 ]; then
    echo "HTTP $status from $method $path:" >&2; cat "$WORK/body" >&2; echo >&2; exit 1
  fi
  cat "$WORK/body"
}
login() { api POST /api/v1/auth/token "" -d "username=$1" --data-urlencode "password=$2" | json_field access_token; }

step "1. Apply: a new application (Harbour Family Medicine Group, sample data)"
REF=$(api POST /api/v1/applications "" -H 'Content-Type: application/json' \
  -d "{\"contact_email\":\"admin@harbour-fm.example\",\"password\":\"$PASSWORD\",\"language\":\"en\"}" | json_field reference)
echo "application reference: $REF"
TOKEN=$(login "$REF" "$PASSWORD")

step "2. Fill the five steps"
api PUT "/api/v1/applications/$REF/provider" "$TOKEN" -H 'Content-Type: application/json' -d '{
  "provider_type":"medical_group","name_en":"Harbour Family Medicine Group Limited",
  "name_zh":"海港家庭醫學集團有限公司","business_registration_number":"87654321",
  "correspondence_address":"Room 1501, 15/F, 1 Queen'"'"'s Road Central, Central, Hong Kong",
  "phone":"28001234","email":"admin@harbour-fm.example","preferred_language":"en"}' >/dev/null
echo "step 1 provider: done"
api PUT "/api/v1/applications/$REF/user-admins" "$TOKEN" -H 'Content-Type: application/json' -d '[
  {"name":"LEE Ka Yan","identity_document":"Y765432(2)","email":"kayan.lee@harbour-fm.example",
   "phone":"61234567","position":"Practice Manager"}]' >/dev/null
echo "step 2 user administrators: done"
api PUT "/api/v1/applications/$REF/service-locations" "$TOKEN" -H 'Content-Type: application/json' -d '[
  {"name_en":"Central Clinic","name_zh":"中環診所","address":"Room 1501, 15/F, 1 Queen'"'"'s Road Central, Central",
   "district":"Central and Western","phone":"28001234"},
  {"name_en":"Tuen Mun Clinic","name_zh":"屯門𨋢口診所","address":"Shop 5, G/F, 3 Tuen Mun Heung Sze Wui Road, Tuen Mun",
   "district":"Tuen Mun","phone":"24501234"}]' >/dev/null
echo "step 3 service locations: 1 Central Clinic, 2 Tuen Mun Clinic (屯門𨋢口診所)"
printf '%%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%%%EOF\n' > "$WORK/br.pdf"
printf '%%PDF-1.4\n%% professional registration\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%%%EOF\n' > "$WORK/reg.pdf"
api POST "/api/v1/applications/$REF/documents" "$TOKEN" -F kind=business_registration_certificate -F "file=@$WORK/br.pdf;type=application/pdf" >/dev/null
api POST "/api/v1/applications/$REF/documents" "$TOKEN" -F kind=professional_registration_of_person_in_charge -F "file=@$WORK/reg.pdf" >/dev/null
echo "step 4 documents: 2 PDFs uploaded"
api POST "/api/v1/applications/$REF/submit" "$TOKEN" | grep -o '"status":"[a-z_]*"' | head -1

step "3. A registration officer approves"
RTOKEN=$(login "${REVIEWER%%:*}" "${REVIEWER#*:}")
api POST "/api/v1/officer/applications/$REF/decision" "$RTOKEN" -H 'Content-Type: application/json' \
  -d '{"decision":"approve","reason":"All documents verified"}' | grep -o '"status":"[a-z_]*"' | head -1

step "4. Read the download codes from the login-instructions email in $OUTBOX"
MAIL=$(grep -l "registration $REF: how to collect" "$OUTBOX"/new/* | head -1)
echo "mail: $MAIL"
grep -h "registration $REF" "$OUTBOX"/new/* | sed 's/^/  /'
CODE1=$(grep 'Download code:' "$MAIL" | sed -n '1s/.*Download code: *//p' | tr -d '\r')
CODE2=$(grep 'Download code:' "$MAIL" | sed -n '2s/.*Download code: *//p' | tr -d '\r')
echo "location 1 code: ${CODE1:0:4}-…  location 2 code: ${CODE2:0:4}-…"

step "5a. Collect location 1 with a CSR made by openssl req (key stays here)"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/l1.key" \
  -subj "/CN=ignored by the CA" -out "$WORK/l1.csr" 2>/dev/null
CSR_JSON=$(awk 'BEGIN{ORS="\\n"} {print}' "$WORK/l1.csr")
api POST "/api/v1/applications/$REF/service-locations/1/certificate" "$TOKEN" -H 'Content-Type: application/json' \
  -d "{\"download_code\":\"$CODE1\",\"csr\":\"$CSR_JSON\"}" > "$WORK/l1.json"
SERIAL1=$(json_field serial_number < "$WORK/l1.json")
sed -n 's/.*"certificate_pem":"\([^"]*\)".*/\1/p' "$WORK/l1.json" | sed 's/\\n/\n/g' > "$WORK/l1.crt"
openssl x509 -in "$WORK/l1.crt" -noout -subject -serial -enddate -nameopt utf8,sep_comma_plus

step "5b. Collect location 2 as PKCS#12 (key made by the service, never stored)"
curl -sS -f -o "$WORK/l2.p12" -D "$WORK/l2.headers" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -d "{\"download_code\":\"$CODE2\",\"pkcs12_password\":\"$PASSWORD\",\"pkcs12_profile\":\"modern\"}" \
  "$API/api/v1/applications/$REF/service-locations/2/certificate"
grep -i '^content-type\|^x-serial-number' "$WORK/l2.headers"
openssl pkcs12 -in "$WORK/l2.p12" -passin "pass:$PASSWORD" -nokeys -clcerts 2>/dev/null \
  | openssl x509 -noout -subject -serial -nameopt utf8,sep_comma_plus
openssl pkcs12 -in "$WORK/l2.p12" -passin "pass:$PASSWORD" -nodes -out "$WORK/l2.pem" 2>/dev/null

step "6. mTLS: curl to /mtls/whoami with each certificate"
curl -sS -f -o "$WORK/root.der" "$API/pki/ca/ehrca-root-1.crt"
openssl x509 -inform der -in "$WORK/root.der" -out "$WORK/root.pem"
echo "location 1 (CSR):     $(curl -sS --cacert "$WORK/root.pem" --cert "$WORK/l1.crt" --key "$WORK/l1.key" "$MTLS/mtls/whoami")"
echo "location 2 (PKCS#12): $(curl -sS --cacert "$WORK/root.pem" --cert "$WORK/l2.pem" "$MTLS/mtls/whoami")"

step "7. A security officer revokes location 1's certificate (keyCompromise)"
STOKEN=$(login "${SECURITY%%:*}" "${SECURITY#*:}")
api POST "/api/v1/officer/certificates/$SERIAL1/revoke" "$STOKEN" -H 'Content-Type: application/json' \
  -d '{"reason":"keyCompromise"}'
echo

step "8. The CRL at the distribution point lists it"
CDP=$(openssl x509 -in "$WORK/l1.crt" -noout -ext crlDistributionPoints | sed -n 's/.*URI://p' | tr -d ' ')
echo "CRL distribution point: $CDP"
curl -sS -f -D "$WORK/crl.headers" -o "$WORK/crl.der" "$CDP"
grep -i '^content-type' "$WORK/crl.headers"
openssl crl -inform der -in "$WORK/crl.der" -noout -text | grep -A4 -i "crl number\|serial number: *$(echo "$SERIAL1" | tr a-f A-F | sed 's/^0*//')" | head -9

step "9. curl with the revoked certificate now fails; the other still works"
if OUT=$(curl -sS --cacert "$WORK/root.pem" --cert "$WORK/l1.crt" --key "$WORK/l1.key" "$MTLS/mtls/whoami" 2>&1); then
  echo "revoked certificate: UNEXPECTEDLY ACCEPTED: $OUT"; exit 1
else
  echo "revoked certificate refused: $OUT"
fi
echo "location 2 (PKCS#12): $(curl -sS -f --cacert "$WORK/root.pem" --cert "$WORK/l2.pem" "$MTLS/mtls/whoami")"
printf '\n\033[1mDemo complete.\033[0m\n'
