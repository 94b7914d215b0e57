# Infrastructure (terraform/): formatting, the checkov policy scan and the HCL structure tests.
# checkov lives in its own venv: its bc-python-hcl2 would overwrite python-hcl2 8.x in .venv.
INFRA_VENV := .cache/venvs/infra-tools
INFRA_STAMP := $(INFRA_VENV)/.installed
INFRA_ENV := TF_CLI_CONFIG_FILE=/dev/null BC_SKIP_MAPPING=TRUE
CHECKOV_LOG := $(INFRA_VENV)/checkov.log

.PHONY: validate-infra infra-tools

$(INFRA_STAMP): requirements/infra-tools.txt
	test -x $(INFRA_VENV)/bin/python || $(PYTHON_BIN) -m venv $(INFRA_VENV)
	$(INFRA_VENV)/bin/python -m pip install --quiet --upgrade "pip>=24"
	$(INFRA_VENV)/bin/python -m pip install --quiet -r requirements/infra-tools.txt
	touch $(INFRA_STAMP)

infra-tools: $(INFRA_STAMP) ## Create .cache/venvs/infra-tools with the pinned checkov

validate-infra: $(STAMP) $(INFRA_STAMP) ## terraform fmt -check, checkov and the HCL structure tests (terraform/)
	@command -v terraform >/dev/null || { echo "terraform not found: install Terraform 1.11" >&2; exit 2; }
	$(INFRA_ENV) terraform fmt -check -recursive terraform
	$(INFRA_ENV) $(INFRA_VENV)/bin/checkov -d terraform --framework terraform --compact --quiet \
		--var-file terraform/terraform.tfvars.example > $(CHECKOV_LOG) 2>&1; status=$$?; \
		cat $(CHECKOV_LOG); \
		if grep -q "Failed to run check" $(CHECKOV_LOG); then echo "checkov crashed on a check" >&2; exit 1; fi; \
		exit $$status
	$(PY) -m pytest tests/test_terraform.py -m "not slow" $(PYTEST_ARGS)
