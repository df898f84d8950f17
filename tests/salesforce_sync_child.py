"""Run the whole pipeline for one config in a child process, so a test can SIGKILL it mid-sync.

Usage: python -m tests.salesforce_sync_child path/to/crm_roi.yaml
"""

import sys

from pipelines.config import load_settings
from tests.conftest import run_pipeline

if __name__ == "__main__":
    run_pipeline(load_settings(sys.argv[1])).close()
