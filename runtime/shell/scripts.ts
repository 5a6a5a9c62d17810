/**
 * The shell-integration scripts shipped into every sandbox (see shellFiles() in
 * ./index.ts): the one copy of their text. They live here as string constants, not as
 * .sh files, because the esbuild bundle in dist/ carries only what TypeScript imports.
 *
 * Each is written as the exact file text between the backticks (String.raw: backslashes
 * are kept as they are) with one exception: \${ stands for a shell's $-brace, which
 * JavaScript would otherwise read as an interpolation. The tag refuses interpolations
 * and backticks, so nothing else can change the text.
 */

function script(strings: TemplateStringsArray, ...values: never[]): string {
  if (values.length || strings.raw.some((s) => s.includes('`'))) throw new Error('shell scripts are plain text: no interpolations or backticks');
  return strings.raw[0].replace(/\\\$\{/g, '${').replace(/^\n/, '');
}

/** bash's rcfile: `bash --rcfile /run/airlock/shell/bash-integration.sh -i`. */
export const BASH_INTEGRATION = script`
# Airlock shell integration for bash: an rcfile, used as
#   bash --rcfile /run/airlock/shell/bash-integration.sh -i
# It reads what bash would have read without --rcfile, then reports the shell's
# state to the terminal with VS Code's OSC 633 sequences:
#   A (prompt start), B (prompt end: command input starts) around PS1;
#   E;<command line> and C (output starts) from PS0, once per command line;
#   D;<exit status> (command finished) and P;Cwd=<dir> before each prompt.
# Everything it prints is a report by the sandbox about itself: the runtime treats it
# as untrusted ("reported by shell").
# Needs bash 4.4 (PS0, \${var@P}); 5.1 for PROMPT_COMMAND arrays. Limits: with
# 'shopt -u promptvars' PS0 is not expanded (no E or C); a PROMPT_COMMAND assigned
# later as a string replaces the first hook (no D).

# Only for interactive shells, and only once (sourcing it again does nothing).
case $- in *i*) ;; *) return 0 ;; esac
if [ -n "\${__airlock_si-}" ]; then return 0; fi

# Debian's bash reads /etc/bash.bashrc itself even with --rcfile (SYS_BASHRC); upstream
# bash does not. Reading it twice could repeat what it appends (PROMPT_COMMAND), so it
# is read only while the prompt is still bash's built-in default (nothing ran yet).
if [ "\${PS1-}" = '\s-\v\$ ' ] && [ -r /etc/bash.bashrc ]; then . /etc/bash.bashrc; fi
if [ -r "$HOME/.bashrc" ]; then . "$HOME/.bashrc"; fi
if [ -z "\${PS1-}" ] || [ "$PS1" = '\s-\v\$ ' ]; then PS1='airlock@airlock:\w\$ '; fi

__airlock_si=1
# The functions below are defined with alias expansion off, so aliases from the files
# just read (alias printf=..., alias return=...) cannot change what they do.
__airlock_aliases=0
if \builtin shopt -q expand_aliases; then __airlock_aliases=1; fi
\builtin shopt -u expand_aliases

# Sets __airlock_out to $1 escaped for an OSC 633 field: \ as \\, ; as \x3b, bytes
# below 0x20 and 0x7f as \xHH. Byte-wise (LC_ALL=C), so UTF-8 passes through unchanged.
# A variable, not output: a command substitution would be parsed when it runs, with the
# user's aliases back on.
__airlock_escape() {
  builtin local LC_ALL=C
  builtin local s="\${1-}" out="" c i
  s=\${s//\\/\\\\}
  s=\${s//;/\\x3b}
  case $s in
    *[$'\001'-$'\037'$'\177']*)
      for ((i = 0; i < \${#s}; i++)); do
        c=\${s:i:1}
        case $c in
          [$'\001'-$'\037'$'\177']) builtin printf -v c '\\x%02x' "'$c" ;;
        esac
        out+=$c
      done
      s=$out
      ;;
  esac
  __airlock_out=$s
}

# PS0's command substitution (a subshell, so it can only print): bash expands PS0 once
# per command line, after reading it and before running it. The line is the newest
# history entry when bash added it (its number is the HISTCMD the prompt recorded);
# when it did not (HISTCONTROL=ignorespace, HISTIGNORE, history off) the line is not
# known and E is left out, except for ignoredups, where the newest entry is the line.
__airlock_ps0() {
  builtin local LC_ALL=C
  builtin local h n
  # This runs in a subshell: turning aliases off here changes nothing for the user.
  builtin shopt -u expand_aliases
  h=$(HISTTIMEFORMAT='' builtin history 1 2>/dev/null)
  h=\${h#"\${h%%[! ]*}"}
  n=\${h%%[!0-9]*}
  h=\${h#"$n"}
  h=\${h:2}
  if [ -n "$n" ] && [ -n "\${__airlock_histcmd-}" ] && { [ "$n" -ge "$__airlock_histcmd" ] 2>/dev/null || [ "\${__airlock_dups_only-}" = 1 ]; }; then
    # A command line longer than the runtime keeps (8 KiB) is cut here: the runtime
    # still sees that it is longer and marks it truncated.
    __airlock_escape "\${h:0:8200}"
    builtin printf '\e]633;E;%s\a' "$__airlock_out"
  fi
  builtin printf '\e]633;C\a'
}

# First in PROMPT_COMMAND: reports how the command ended, if one ran (bash's command
# number, \#, counts the command lines it executed), and hands $? on unchanged.
__airlock_precmd() {
  builtin local status=$? n
  n=\${__airlock_cmdno_fmt@P}
  if [ -n "\${__airlock_cmdno-}" ] && [ "$n" != "$__airlock_cmdno" ]; then
    builtin printf '\e]633;D;%s\a' "$status"
  fi
  __airlock_cmdno=$n
  builtin return "$status"
}

# Last in PROMPT_COMMAND: the directory, what the next line's history number will be,
# and A/B around PS1 (again whenever something replaced PS1 or PS0).
__airlock_prompt() {
  __airlock_escape "$PWD"
  builtin printf '\e]633;P;Cwd=%s\a' "$__airlock_out"
  # With history off, nothing typed is added: no line is known (HISTCMD stands still).
  __airlock_histcmd=''
  __airlock_dups_only=0
  if [[ -o history ]]; then
    __airlock_histcmd=$HISTCMD
    if [ -z "\${HISTIGNORE-}" ]; then
      case :\${HISTCONTROL-}: in
        *:ignorespace:* | *:ignoreboth:*) ;;
        *) __airlock_dups_only=1 ;;
      esac
    fi
  fi
  if [ "\${PS1-}" != "\${__airlock_ps1-}" ]; then
    __airlock_ps1='\[\e]633;A\a\]'"\${PS1-}"'\[\e]633;B\a\]'
    PS1=$__airlock_ps1
  fi
  case \${PS0-} in
    *'$(__airlock_ps0)') ;;
    *) PS0="\${PS0-}"'$(__airlock_ps0)' ;;
  esac
  builtin return 0
}

__airlock_cmdno_fmt='\#'
# '__airlock_precmd && :' keeps the status for the user's PROMPT_COMMAND without
# tripping 'set -e': a failure that is not the last of an && list never exits the shell.
if ((BASH_VERSINFO[0] > 5 || (BASH_VERSINFO[0] == 5 && BASH_VERSINFO[1] >= 1))); then
  PROMPT_COMMAND=('__airlock_precmd && :' "\${PROMPT_COMMAND[@]}" '__airlock_prompt')
else
  PROMPT_COMMAND="__airlock_precmd && :"$'\n'"\${PROMPT_COMMAND-}"$'\n''__airlock_prompt'
fi
if [ "$__airlock_aliases" = 1 ]; then \builtin shopt -s expand_aliases; fi
\builtin unset __airlock_aliases
`;

/** zsh's startup file: `ZDOTDIR=/run/airlock/shell/zsh zsh -i` reads it as $ZDOTDIR/.zshrc. */
export const ZSH_RC = script`
# Airlock shell integration for zsh, read as $ZDOTDIR/.zshrc when started as
#   ZDOTDIR=/run/airlock/shell/zsh zsh -i
# It reads the user's own startup files, then reports the shell's state to the
# terminal with VS Code's OSC 633 sequences: A and B around the prompt, E;<command
# line> and C from preexec, D;<exit status> and P;Cwd=<dir> from precmd. Everything it
# prints is a report by the sandbox about itself: the runtime treats it as untrusted
# ("reported by shell").

# Only interactive shells report anything (zsh reads this file for no other kind), and
# only once (sourcing it again does nothing).
[[ -o interactive ]] || builtin return 0
[[ -z \${__airlock_si-} ]] || builtin return 0
typeset -g __airlock_si=1

# zsh has already read /etc/zsh/zshenv and, with GLOBAL_RCS (the default),
# /etc/zsh/zshrc; ZDOTDIR pointed here, so the user's ~/.zshenv and ~/.zshrc were not
# (~/.zshenv is read late, here, and only by interactive shells). From here on ZDOTDIR
# is the user's again, also for zsh started from this shell.
builtin unset ZDOTDIR
if [[ ! -o globalrcs && -r /etc/zsh/zshrc ]]; then builtin source /etc/zsh/zshrc; fi
if [[ -r $HOME/.zshenv ]]; then builtin source $HOME/.zshenv; fi
if [[ -r $HOME/.zshrc ]]; then builtin source $HOME/.zshrc; fi
if [[ -z \${PS1-} || $PS1 == '%m%# ' ]]; then PS1='airlock@airlock:%~%# '; fi

typeset -g __airlock_ran=0 __airlock_ps1='' __airlock_out=''
# The functions below are defined with aliases off, so aliases from the files just read
# cannot change what they do.
typeset -g __airlock_aliases=0
if [[ -o aliases ]]; then __airlock_aliases=1; fi
builtin setopt no_aliases

# Sets __airlock_out to $1 escaped for an OSC 633 field: \ as \\, ; as \x3b, bytes
# below 0x20 and 0x7f as \xHH. Byte-wise (no MULTIBYTE), so UTF-8 passes unchanged.
__airlock_escape() {
  builtin emulate -L zsh
  builtin setopt no_multibyte
  builtin local s=\${1-} out='' c
  builtin integer i
  s=\${s//\\/\\\\}
  s=\${s//;/\\x3b}
  if [[ $s == *[$'\001'-$'\037'$'\177']* ]]; then
    for (( i = 1; i <= $#s; i++ )); do
      c=$s[i]
      if [[ $c == [$'\001'-$'\037'$'\177'] ]]; then builtin printf -v c '\\x%02x' "'$c"; fi
      out+=$c
    done
    s=$out
  fi
  __airlock_out=$s
}

# preexec: once per command line, after it was read and before it runs. $1 is the line
# as typed, also when the history does not keep it. A line longer than the runtime
# keeps (8 KiB) is cut here: the runtime still sees that it is longer and marks it.
__airlock_preexec() {
  builtin emulate -L zsh
  __airlock_ran=1
  builtin setopt no_multibyte
  __airlock_escape "\${1[1,8200]}"
  builtin print -rn -- $'\e]633;E;'"$__airlock_out"$'\a\e]633;C\a'
}

# First precmd: how the command ended, if one ran. zsh runs hook functions without
# changing $? for the next one, so the user's hooks still see the command's status.
__airlock_precmd() {
  builtin local st=$?
  builtin emulate -L zsh
  if (( __airlock_ran )); then
    builtin print -rn -- $'\e]633;D;'"$st"$'\a'
    __airlock_ran=0
  fi
}

# Last precmd: the directory, and A/B around PS1 (again whenever something replaced it).
__airlock_prompt() {
  builtin emulate -L zsh
  __airlock_escape "$PWD"
  builtin print -rn -- $'\e]633;P;Cwd='"$__airlock_out"$'\a'
  if [[ $PS1 != "$__airlock_ps1" ]]; then
    __airlock_ps1=$'%{\e]633;A\a%}'"$PS1"$'%{\e]633;B\a%}'
    PS1=$__airlock_ps1
  fi
}

typeset -ga precmd_functions preexec_functions
precmd_functions=(__airlock_precmd $precmd_functions __airlock_prompt)
preexec_functions+=(__airlock_preexec)
if (( __airlock_aliases )); then builtin setopt aliases; fi
builtin unset __airlock_aliases
`;
