"""Call the PICO API from Python with the standard library only, and save the images.

Usage: python examples/pico_client.py "ginger cat" [http://127.0.0.1:5088]
"""

import base64
import json
import sys
import urllib.error
import urllib.request

phrase = sys.argv[1] if len(sys.argv) > 1 else "ginger cat"
server = sys.argv[2] if len(sys.argv) > 2 else "http://127.0.0.1:5088"
body = json.dumps({"Phrase": phrase, "Total": 2, "Steps": 25}).encode()
request = urllib.request.Request(f"{server}/api/v1/stable-diffusion-xl", data=body,
                                 headers={"Content-Type": "application/json"})
try:
    with urllib.request.urlopen(request, timeout=600) as response:
        result = json.load(response)
except urllib.error.HTTPError as error:  # every error is {"Error": {"Code", "Message", "Field"?}}
    problem = json.load(error)["Error"]
    sys.exit(f"{error.code} {problem['Code']}: {problem['Message']}")

for image in result["Images"]:
    name = f"{image['Name']}-{image['Metadata']['Seed']}.png"
    with open(name, "wb") as out:
        out.write(base64.b64decode(image["ImageBase64"]))
    print(name, image["Metadata"])
