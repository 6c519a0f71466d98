pytest_plugins = [
    "tests.support.fixtures",
    "tests.support.browser",
    "tests.support.databases",
]
