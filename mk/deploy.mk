# Deployment: Dockerfile, k8s/ (kustomize), .github/workflows/. Tools live in their own venv:
# checkov pulls bc-python-hcl2, which must never land in .venv.
DEPLOY_VENV := .cache/venvs/deploy-tools
DEPLOY_STAMP := $(DEPLOY_VENV)/.installed
KUBECTL ?= kubectl

.PHONY: deploy-tools validate-deploy

$(DEPLOY_STAMP): requirements/deploy-tools.txt
	test -x $(DEPLOY_VENV)/bin/python || $(PYTHON_BIN) -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/python -m pip install --quiet --upgrade "pip>=24"
	$(DEPLOY_VENV)/bin/python -m pip install --quiet -r requirements/deploy-tools.txt
	touch $(DEPLOY_STAMP)

deploy-tools: $(DEPLOY_STAMP) ## Create the deploy-tools venv (checkov, kubernetes-validate, linters)

validate-deploy: $(DEPLOY_STAMP) ## Render every k8s overlay and validate it, the Dockerfile, the workflows
	DEPLOY_TOOLS=$(DEPLOY_VENV)/bin KUBECTL=$(KUBECTL) deploy/validate.sh
