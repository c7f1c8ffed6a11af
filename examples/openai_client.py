"""The official openai SDK against PICO's OpenAI Images API.

pip install openai; start `pico serve --demo`; then: python examples/openai_client.py
"""

import base64

from openai import OpenAI

# Any key works unless the server was started with --api-key.
client = OpenAI(base_url="http://127.0.0.1:5088/v1", api_key="unused")

result = client.images.generate(
    model="sdxl",  # sd15, sd2, sdxl, sd15-inpaint, sd-variation, or a model id
    prompt="ginger cat",
    n=2,
    size="1024x1024",
    extra_body={"negative_prompt": "blurry", "seed": 42, "steps": 25, "scheduler": "Euler a"},
)
for index, image in enumerate(result.data):
    with open(f"openai-{index}.png", "wb") as out:
        out.write(base64.b64decode(image.b64_json))

# Edit: with a mask (transparent = repaint) it is inpainting; without, image-to-image.
with open("openai-0.png", "rb") as picture:
    edited = client.images.edit(image=picture, prompt="ginger cat wearing a hat", extra_body={"strength": 0.6})
print(len(edited.data), "edited image(s)")
