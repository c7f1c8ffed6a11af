#!/usr/bin/env sh
# The PICO API with curl. Start a server first: `pico serve --demo` (or `make demo`).
set -eu
PICO=${PICO:-http://127.0.0.1:5088}

curl -s "$PICO/api/v1/health"; echo

# The original README's example, as written.
curl -s -H 'Content-Type: application/json' -d '{"Phrase":"ginger cat"}' \
    "$PICO/api/v1/stable-diffusion-xl" > response.json

# Save the first image (needs jq).
jq -r '.Images[0].ImageBase64' response.json | base64 -d > ginger-cat.png
jq '.Images[0].Metadata' response.json

# Two images, a fixed seed, fewer steps, another sampler.
curl -s -H 'Content-Type: application/json' \
    -d '{"Phrase":"ginger cat","Total":2,"Seed":42,"Steps":25,"Scheduler":"DPM++ 2M Karras"}' \
    "$PICO/api/v1/stable-diffusion" | jq '[.Images[].Metadata.Seed]'
