//! Dialplan expressions: `${var}` templates and branch conditions.
//!
//! Conditions are parsed once at load (errors carry the dialplan's file:line) into a tiny AST
//! and evaluated against the call's variables:
//! `cond := cmp (("and" | "or") cmp)*`, `cmp := operand [op operand]`,
//! `op := == | != | < | <= | > | >=`, `operand := name | 'text' | "text" | number`.
//! `and` binds tighter than `or`. Comparisons are numeric when both sides are numbers, else
//! text; a bare operand is true when the variable is set and not empty.

use std::collections::HashMap;

pub type Vars = HashMap<String, String>;

/// Replace every `${name}` by the variable's value (empty when unset).
pub fn expand(template: &str, vars: &Vars) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                if let Some(v) = vars.get(after[..end].trim()) {
                    out.push_str(v);
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Variable names referenced by a template (for load-time checks and docs).
pub fn template_is_valid(template: &str) -> bool {
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) if !after[..end].trim().is_empty() => rest = &after[end + 1..],
            _ => return false,
        }
    }
    true
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Var(String),
    Text(String),
    Number(f64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Truthy(Operand),
    Compare(Operand, CmpOp, Operand),
    And(Box<Condition>, Box<Condition>),
    Or(Box<Condition>, Box<Condition>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ExprError(pub String);

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Text(String),
    Num(f64),
    Op(CmpOp),
    And,
    Or,
}

fn tokenize(s: &str) -> Result<Vec<Tok>, ExprError> {
    let mut toks = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' || c == '"' {
            let q = c;
            let mut j = i + 1;
            while j < chars.len() && chars[j] != q {
                j += 1;
            }
            if j >= chars.len() {
                return Err(ExprError("unterminated string".into()));
            }
            toks.push(Tok::Text(chars[i + 1..j].iter().collect()));
            i = j + 1;
        } else if "=!<>".contains(c) {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let (op, len) = match two.as_str() {
                "==" => (CmpOp::Eq, 2),
                "!=" => (CmpOp::Ne, 2),
                "<=" => (CmpOp::Le, 2),
                ">=" => (CmpOp::Ge, 2),
                _ if c == '<' => (CmpOp::Lt, 1),
                _ if c == '>' => (CmpOp::Gt, 1),
                _ => return Err(ExprError(format!("unknown operator near '{two}'"))),
            };
            toks.push(Tok::Op(op));
            i += len;
        } else if c.is_ascii_digit()
            || (c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let mut j = i + 1;
            while j < chars.len() && (chars[j].is_ascii_digit() || chars[j] == '.') {
                j += 1;
            }
            let text: String = chars[i..j].iter().collect();
            let n = text
                .parse()
                .map_err(|_| ExprError(format!("bad number '{text}'")))?;
            toks.push(Tok::Num(n));
            i = j;
        } else if c.is_alphanumeric() || c == '_' {
            let mut j = i + 1;
            while j < chars.len() && (chars[j].is_alphanumeric() || "_.-".contains(chars[j])) {
                j += 1;
            }
            let word: String = chars[i..j].iter().collect();
            toks.push(match word.as_str() {
                "and" => Tok::And,
                "or" => Tok::Or,
                _ => Tok::Ident(word),
            });
            i = j;
        } else {
            return Err(ExprError(format!("unexpected character '{c}'")));
        }
    }
    Ok(toks)
}

impl Condition {
    pub fn parse(s: &str) -> Result<Condition, ExprError> {
        let toks = tokenize(s)?;
        if toks.is_empty() {
            return Err(ExprError("empty condition".into()));
        }
        let mut pos = 0;
        let c = parse_or(&toks, &mut pos)?;
        if pos != toks.len() {
            return Err(ExprError(format!(
                "unexpected token at position {}",
                pos + 1
            )));
        }
        Ok(c)
    }

    pub fn eval(&self, vars: &Vars) -> bool {
        match self {
            Condition::Truthy(o) => !resolve(o, vars).is_empty(),
            Condition::Compare(a, op, b) => {
                let (a, b) = (resolve(a, vars), resolve(b, vars));
                let ord = match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
                    (Ok(x), Ok(y)) => x.partial_cmp(&y),
                    _ => Some(a.as_str().cmp(b.as_str())),
                };
                let Some(ord) = ord else { return false };
                use std::cmp::Ordering::*;
                match op {
                    CmpOp::Eq => ord == Equal,
                    CmpOp::Ne => ord != Equal,
                    CmpOp::Lt => ord == Less,
                    CmpOp::Le => ord != Greater,
                    CmpOp::Gt => ord == Greater,
                    CmpOp::Ge => ord != Less,
                }
            }
            Condition::And(a, b) => a.eval(vars) && b.eval(vars),
            Condition::Or(a, b) => a.eval(vars) || b.eval(vars),
        }
    }
}

fn resolve(o: &Operand, vars: &Vars) -> String {
    match o {
        Operand::Var(name) => vars.get(name).cloned().unwrap_or_default(),
        Operand::Text(t) => t.clone(),
        Operand::Number(n) => n.to_string(),
    }
}

fn parse_or(t: &[Tok], pos: &mut usize) -> Result<Condition, ExprError> {
    let mut left = parse_and(t, pos)?;
    while t.get(*pos) == Some(&Tok::Or) {
        *pos += 1;
        let right = parse_and(t, pos)?;
        left = Condition::Or(Box::new(left), Box::new(right));
    }
    Ok(left)
}

fn parse_and(t: &[Tok], pos: &mut usize) -> Result<Condition, ExprError> {
    let mut left = parse_cmp(t, pos)?;
    while t.get(*pos) == Some(&Tok::And) {
        *pos += 1;
        let right = parse_cmp(t, pos)?;
        left = Condition::And(Box::new(left), Box::new(right));
    }
    Ok(left)
}

fn parse_operand(t: &[Tok], pos: &mut usize) -> Result<Operand, ExprError> {
    let tok = t
        .get(*pos)
        .ok_or_else(|| ExprError("expected a value".into()))?;
    *pos += 1;
    match tok {
        Tok::Ident(n) => Ok(Operand::Var(n.clone())),
        Tok::Text(s) => Ok(Operand::Text(s.clone())),
        Tok::Num(n) => Ok(Operand::Number(*n)),
        _ => Err(ExprError("expected a value".into())),
    }
}

fn parse_cmp(t: &[Tok], pos: &mut usize) -> Result<Condition, ExprError> {
    let left = parse_operand(t, pos)?;
    if let Some(Tok::Op(op)) = t.get(*pos) {
        *pos += 1;
        let right = parse_operand(t, pos)?;
        return Ok(Condition::Compare(left, *op, right));
    }
    Ok(Condition::Truthy(left))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn templates() {
        let v = vars(&[("ticket.order_id", "A-17"), ("n", "3")]);
        assert_eq!(
            expand("order ${ticket.order_id} x${n}${missing}!", &v),
            "order A-17 x3!"
        );
        assert_eq!(expand("broken ${x", &v), "broken ${x");
        assert!(template_is_valid("a ${b} c"));
        assert!(!template_is_valid("a ${} c"));
        assert!(!template_is_valid("a ${b"));
    }

    #[test]
    fn conditions() {
        let v = vars(&[
            ("ticket.status", "delayed"),
            ("ticket.delay_days", "12"),
            ("segment", "vip"),
        ]);
        let yes = [
            "ticket.status == 'delayed'",
            "ticket.delay_days > 9",
            "ticket.delay_days >= 12 and segment == \"vip\"",
            "ticket.status == 'x' or segment != 'basic'",
            "ticket.status",
        ];
        for c in yes {
            assert!(Condition::parse(c).expect(c).eval(&v), "{c}");
        }
        let no = [
            "ticket.delay_days < 3",
            "nothing",
            "ticket.status == 'delayed' and segment == 'basic'",
        ];
        for c in no {
            assert!(!Condition::parse(c).expect(c).eval(&v), "{c}");
        }
        for bad in ["", "a ==", "'open", "a = b", "a == b c", "a & b"] {
            assert!(Condition::parse(bad).is_err(), "{bad}");
        }
    }
}
