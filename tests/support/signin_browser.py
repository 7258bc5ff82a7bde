"""Debian's Chromium, headless, driven by selenium through the issuer's sign-in pages.

Chromium trusts the service's certificate by its public key only (`--ignore-certificate-errors-spki-list`): no NSS
tools are needed and no other certificate error is ignored.

Run as a script (`python signin_browser.py URL`) it is what the `BROWSER` variable names for az: az's MSAL opens the
sign-in URL through Python's `webbrowser`, which waits for the command, so the script starts the driving in a
detached process and returns at once (az's loopback server must be free to answer the redirect). The user name and
password come from SIGNIN_USERNAME and SIGNIN_PASSWORD, the service's certificate from SIGNIN_CERT.
"""

from __future__ import annotations

import base64
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

TIMEOUT = 60


def spki_hash(cert_file: str | Path) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)) of a PEM certificate: what Chromium's SPKI allow-list takes."""
    cert = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(spki)
    return base64.b64encode(digest.finalize()).decode()


def chromium(cert_file: str | Path) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=390,844",
                     f"--ignore-certificate-errors-spki-list={spki_hash(cert_file)}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(TIMEOUT)
    return driver


def wait_for(condition, timeout: float = TIMEOUT, what: str = "the page"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception:  # the page is still loading or changing
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(f"waited {timeout}s for {what}")


def click_to_navigate(element) -> None:
    """Clicks what leads to another page. chromedriver inspects the clicked node after the click; when the click
    already started the navigation that node is gone, and chromedriver reports it: the click happened all the same."""
    try:
        element.click()
    except WebDriverException as error:
        if "does not belong to the document" not in str(error):
            raise


def fill_sign_in(driver: webdriver.Chrome, username: str, password: str) -> None:
    """The sign-in form: user name, password, then the button (by keyboard: Enter in the password field)."""
    field = wait_for(lambda: driver.find_element(By.ID, "password"), what="the sign-in form")
    user = driver.find_element(By.ID, "username")
    user.clear()
    user.send_keys(username)
    field.send_keys(password)
    click_to_navigate(driver.find_element(By.ID, "signin"))


def visit(driver: webdriver.Chrome, url: str) -> str:
    """Opens the URL; a redirect to a loopback port nobody serves is still a redirect. Returns where it ended."""
    with contextlib.suppress(Exception):
        driver.get(url)
    return driver.current_url


def sign_in(driver: webdriver.Chrome, url: str, username: str | None, password: str | None,
            redirect_prefix: str) -> str:
    """Opens an authorize URL, signs in if the form is shown (not with a live session), and returns the URL the
    issuer redirected to (the page there need not load: only its address matters)."""
    visit(driver, url)

    def redirected_or_form():
        if driver.current_url.startswith(redirect_prefix):
            return "redirected"
        return "form" if driver.find_elements(By.ID, "password") else None

    if wait_for(redirected_or_form, what="the sign-in form or the redirect") == "form":
        if username is None:
            raise AssertionError("the sign-in form was shown where a session should have signed in")
        fill_sign_in(driver, username, password)
    return wait_for(lambda: driver.current_url if driver.current_url.startswith(redirect_prefix) else None,
                    what=f"the redirect to {redirect_prefix}")


def enter_device_code(driver: webdriver.Chrome, verification_uri: str, user_code: str, username: str,
                      password: str) -> str:
    """`/devicelogin`: the code, then the sign-in form; returns the final page's message."""
    driver.get(verification_uri)
    code = wait_for(lambda: driver.find_element(By.ID, "code"), what="the code field")
    code.send_keys(user_code)
    click_to_navigate(driver.find_element(By.ID, "next"))
    fill_sign_in(driver, username, password)
    return wait_for(lambda: driver.find_element(By.ID, "message").text if "signed in" in driver.title.lower()
                    else None, what="the signed-in page")


def _drive(url: str) -> None:
    driver = chromium(os.environ["SIGNIN_CERT"])
    try:
        sign_in(driver, url, os.environ["SIGNIN_USERNAME"], os.environ["SIGNIN_PASSWORD"], "http://localhost")
        time.sleep(1)  # let az's loopback server answer before the browser goes
    finally:
        driver.quit()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--drive":
        _drive(sys.argv[2])
    else:  # as BROWSER: detach, return at once
        log = open(os.environ.get("SIGNIN_BROWSER_LOG", os.devnull), "ab")  # noqa: SIM115 - handed to the child
        subprocess.Popen([sys.executable, __file__, "--drive", sys.argv[1]], stdout=log, stderr=log,
                         start_new_session=True, env=os.environ)
