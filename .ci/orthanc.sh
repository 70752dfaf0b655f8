#!/usr/bin/env bash
# Orthanc, a real PACS, for the DICOM network tests (Testing/test_dicom_send.py): installed with apt
# when missing (Debian/Ubuntu, as root), then started on 127.0.0.1 with a throw-away configuration
# and storage.  Source this file: it exports TARE_DOSIMETRY_ORTHANC="AET@HOST:DICOMPORT,HTTP-URL"
# and ORTHANC_PID.  When Orthanc cannot be installed or started it says why and exports nothing:
# the tests then start their own Orthanc, or skip with the reason.
orthanc_bin=$(command -v Orthanc 2>/dev/null || true)
[ -z "$orthanc_bin" ] && [ -x /usr/sbin/Orthanc ] && orthanc_bin=/usr/sbin/Orthanc
if [ -z "$orthanc_bin" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get install -y -q orthanc >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q orthanc >/dev/null 2>&1; }) \
        && orthanc_bin=/usr/sbin/Orthanc
fi
if [ -z "$orthanc_bin" ]; then
    echo "note: Orthanc is not installed (apt-get install orthanc); the Orthanc tests will skip"
else
    orthanc_dir=$(mktemp -d)
    read -r dicom_port http_port < <(python3 -c 'import socket
def p():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); return s, s.getsockname()[1]
a, x = p(); b, y = p(); print(x, y)')
    cat > "$orthanc_dir/orthanc.json" <<JSON
{"Name": "tare-ci", "StorageDirectory": "$orthanc_dir/db", "IndexDirectory": "$orthanc_dir/db",
 "DicomAet": "ORTHANC", "DicomPort": $dicom_port, "HttpPort": $http_port, "RemoteAccessAllowed": false,
 "AuthenticationEnabled": false, "DicomCheckCalledAet": true, "DicomAlwaysAllowStore": true,
 "DicomAlwaysAllowEcho": true, "Plugins": [], "StorageCompression": false, "UnknownSopClassAccepted": true}
JSON
    "$orthanc_bin" "$orthanc_dir/orthanc.json" >"$orthanc_dir/orthanc.log" 2>&1 &
    ORTHANC_PID=$!
    for _ in $(seq 1 100); do
        if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$http_port/system', timeout=1)" 2>/dev/null; then
            export TARE_DOSIMETRY_ORTHANC="ORTHANC@127.0.0.1:$dicom_port,http://127.0.0.1:$http_port"
            export ORTHANC_PID
            echo "Orthanc $ORTHANC_PID listening on 127.0.0.1:$dicom_port (DICOM) and :$http_port (HTTP)"
            break
        fi
        sleep 0.2
    done
    if [ -z "${TARE_DOSIMETRY_ORTHANC:-}" ]; then
        echo "note: Orthanc did not start ($(tail -c 300 "$orthanc_dir/orthanc.log")); the tests will try themselves"
        kill "$ORTHANC_PID" 2>/dev/null || true
        unset ORTHANC_PID
    fi
fi
