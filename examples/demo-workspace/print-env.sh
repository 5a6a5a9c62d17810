#!/bin/sh
# Prints what a program running here can see of you.
echo "== environment ($(env | wc -l) variables)"
env | sort
echo "== HOME=$HOME"
ls -la "$HOME" 2>&1 | head -20
echo "== ~/.ssh"
ls -la "$HOME/.ssh" 2>&1 | head
echo "== .env"
cat .env 2>&1
