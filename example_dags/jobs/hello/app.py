"""The platform's HelloWorld job: greets with the parameters from macros and .env."""

import os

try:
    from dotenv import load_dotenv

    # No override=True: a variable already set by a macro wins over the same key in .env.
    load_dotenv()
except ImportError:
    pass

app_name = os.getenv("APP_NAME", "UnknownApp")
app_version = os.getenv("APP_VERSION", "0.0.0")
app_author = os.getenv("APP_AUTHOR", "UnknownAuthor")

print(f"Hello from {app_name}")
print(f"Version: {app_version}")
print(f"Author: {app_author}")
print(f"Run mode: {os.getenv('RUN_MODE', 'unset')}")
# A secure macro arrives decrypted; the task log shows *** in its place.
print(f"API token: {os.getenv('API_TOKEN', '<not set>')}")
