"""A real headless Chromium (Debian's chromium + chromium-driver, Selenium from PyPI) on the box's dashboard.

It clicks what a user clicks: Horizon's row actions (a button, or an entry of
the row's menu), modal forms and workflows, switchable fields. Each `shot`
saves a screenshot into ARTEFACTS (kept after the run: the pages as the tests
saw them).
"""

import os
import pathlib
import time

from selenium.common import exceptions as selenium_exceptions
from selenium import webdriver
from selenium.webdriver.chrome import service as chrome_service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = '/usr/bin/chromium'
CHROMEDRIVER = '/usr/bin/chromedriver'
ARTEFACTS = pathlib.Path(os.environ.get('CLOUDLET_ARTEFACTS', '/var/log/openstack-cloudlet/artefacts'))


def available():
    return os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)


class Browser:
    def __init__(self, base_url, shots_dir, timeout=60):
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu',
                         '--window-size=1400,1000', '--lang=en-US'):
            options.add_argument(argument)
        self.driver = webdriver.Chrome(service=chrome_service.Service(CHROMEDRIVER), options=options)
        self.base_url = base_url.rstrip('/')
        self.timeout = timeout
        self.shots_dir = shots_dir
        self.shots = []
        shots_dir.mkdir(parents=True, exist_ok=True)

    def close(self):
        self.driver.quit()

    # ------------------------------------------------------------ pages

    def go(self, path):
        self.driver.get(self.base_url + path)
        self.wait_ready()

    def wait_ready(self):
        WebDriverWait(self.driver, self.timeout).until(
            lambda d: d.execute_script('return document.readyState') == 'complete')

    def wait_url(self, part, timeout=None):
        """The URL once it holds `part`.

        After a click that navigates, the old page is still "complete" until the
        new one starts loading, so wait_ready alone can return too soon.
        """
        try:
            WebDriverWait(self.driver, timeout or self.timeout).until(lambda d: part in d.current_url)
        except selenium_exceptions.TimeoutException:
            raise AssertionError('%r not in the URL %s:\n%s' % (part, self.driver.current_url, self.messages()))
        self.wait_ready()
        return self.driver.current_url

    def shot(self, name):
        path = self.shots_dir / ('%02d-%s.png' % (len(self.shots) + 1, name))
        self.driver.save_screenshot(str(path))
        self.shots.append(path)
        return path

    def wait_for(self, css, timeout=None):
        return WebDriverWait(self.driver, timeout or self.timeout).until(
            expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, css)))

    def text(self):
        """The page's text; a page that is being replaced (a form's redirect) is read again."""
        for _attempt in range(20):
            try:
                return self.driver.find_element(By.TAG_NAME, 'body').text
            except (selenium_exceptions.StaleElementReferenceException,
                    selenium_exceptions.NoSuchElementException):
                time.sleep(0.25)
        return self.driver.find_element(By.TAG_NAME, 'body').text

    def wait_text(self, text, timeout=None, reload_every=None):
        """Until `text` shows on the page (reloading it every `reload_every` s, if given)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        reloaded = time.monotonic()
        while text not in self.text():
            if time.monotonic() > deadline:
                raise AssertionError('%r not on %s; it shows:\n%s' % (text, self.driver.current_url,
                                                                       self.text()[-3000:]))
            if reload_every and time.monotonic() - reloaded > reload_every:
                self.driver.refresh()
                self.wait_ready()
                reloaded = time.monotonic()
            time.sleep(0.5)

    def messages(self):
        """Horizon's alerts on the page (success, info, errors)."""
        return [e.text for e in self.driver.find_elements(By.CSS_SELECTOR, '.alert, .messages .alert')]

    # ------------------------------------------------------------ signing in

    def login(self, username, password):
        self.go('/auth/login/')
        self.driver.find_element(By.ID, 'id_username').send_keys(username)
        self.driver.find_element(By.ID, 'id_password').send_keys(password)
        self.driver.find_element(By.CSS_SELECTOR, 'button[type=submit], #loginBtn').click()
        WebDriverWait(self.driver, self.timeout).until(lambda d: '/auth/login' not in d.current_url)
        self.wait_ready()

    # ------------------------------------------------------------ tables and actions

    def row(self, table, display_name, timeout=None):
        return self.wait_for('table#%s tr[data-display="%s"]' % (table, display_name), timeout)

    def wait_row_text(self, table, display_name, text, timeout=None, reload_every=5):
        """Until the row shows `text` (the page reloaded every `reload_every` s meanwhile)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            try:
                if text in self.row(table, display_name, timeout=reload_every).text:
                    return
            except (selenium_exceptions.TimeoutException,
                    selenium_exceptions.StaleElementReferenceException):
                pass        # not listed yet, or the table refreshed its row
            if time.monotonic() > deadline:
                raise AssertionError('row %s of %s never showed %r:\n%s' % (display_name, table, text,
                                                                             self.text()[-2000:]))
            time.sleep(reload_every)
            self.driver.refresh()
            self.wait_ready()

    def row_actions(self, table, display_name):
        """The names of the row's actions (those Horizon rendered for this user)."""
        row = self.row(table, display_name)
        return sorted(link.get_attribute('id').rsplit('__action_', 1)[1]
                      for link in row.find_elements(By.CSS_SELECTOR, '[id*="__action_"]'))

    def row_action(self, table, display_name, action):
        """Click a row action: its button, or its entry in the row's menu (opened first)."""
        row = self.row(table, display_name)
        link = row.find_element(By.CSS_SELECTOR, '[id$="__action_%s"]' % action)
        if not link.is_displayed():
            row.find_element(By.CSS_SELECTOR, '.dropdown-toggle').click()
            WebDriverWait(self.driver, 10).until(lambda d: link.is_displayed())
        link.click()

    def table_action(self, table, action):
        self.driver.find_element(By.ID, '%s__action_%s' % (table, action)).click()

    # ------------------------------------------------------------ forms

    def modal(self):
        """The form of the modal dialog that opened (Horizon loads it by ajax)."""
        return self.wait_for('.modal.in form')

    def fill(self, values, scope=None):
        """Set fields by name: selects through their (hidden) <select>, so that Horizon's
        switchable fields follow; text fields typed into.
        """
        scope = scope or self.driver
        for name, value in values.items():
            field = scope.find_element(By.CSS_SELECTOR, '[name="%s"]' % name)
            if field.tag_name == 'select':
                self.driver.execute_script(
                    "var s = arguments[0]; s.value = arguments[1]; $(s).trigger('change');", field, value)
                assert field.get_attribute('value') == value, 'no choice %r in %s' % (value, name)
            elif field.get_attribute('type') == 'file':
                field.send_keys(str(value))
            else:
                if not field.is_displayed():    # a workflow's other tab
                    self.driver.execute_script('arguments[0].value = arguments[1];', field, value)
                    continue
                field.clear()
                field.send_keys(value)

    def submit(self, scope=None):
        scope = scope or self.driver
        buttons = [b for b in scope.find_elements(By.CSS_SELECTOR, '.modal-footer [type=submit], '
                                                                    '.modal-footer .btn-primary')
                   if b.is_displayed()]
        buttons[-1].click()

    def field_errors(self):
        return [e.text for e in self.driver.find_elements(By.CSS_SELECTOR, '.has-error .help-block, '
                                                                           '.alert-danger')
                if e.is_displayed() and e.text]

    def wait_gone(self, css, timeout=None):
        try:
            WebDriverWait(self.driver, timeout or self.timeout).until(
                expected_conditions.invisibility_of_element_located((By.CSS_SELECTOR, css)))
        except selenium_exceptions.TimeoutException:
            raise AssertionError('%s still shown on %s:\n%s' % (css, self.driver.current_url,
                                                                self.text()[-2000:]))
