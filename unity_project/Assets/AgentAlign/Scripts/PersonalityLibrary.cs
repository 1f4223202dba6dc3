// The personalities a designer can switch between: ONNX files from `agentalign export`, each
// with its card. An asset of its own (Assets/AgentAlign/Models/Personalities.asset), so adding a
// personality never touches the generated scene; AgentAlign > Fill Personality Library From
// Models Folder fills it from Assets/AgentAlign/Models.

using System;
using System.Collections.Generic;
using Unity.InferenceEngine;
using UnityEngine;

namespace AgentAlign
{
    [Serializable]
    public class Personality
    {
        [Tooltip("Shown in the switcher; empty = the card's name, else the model's file name.")]
        public string name;

        [Tooltip("The exported policy: <name>.onnx, in ML-Agents' inference contract.")]
        public ModelAsset model;

        [Tooltip("Its card, <name>.json: stage, target, outcome rates measured at export.")]
        public TextAsset card;

        // The fields of the card shown in the switcher; JsonUtility fills them.
#pragma warning disable 0649
        [Serializable]
        class CardFields
        {
            public string name;
            public string stage;
            public string target;
        }
#pragma warning restore 0649

        CardFields m_Fields;

        CardFields Fields
        {
            get
            {
                if (m_Fields == null)
                {
                    m_Fields = card != null ? JsonUtility.FromJson<CardFields>(card.text) : null;
                    if (m_Fields == null)
                        m_Fields = new CardFields();
                }
                return m_Fields;
            }
        }

        public string Label
        {
            get
            {
                if (!string.IsNullOrEmpty(name))
                    return name;
                if (!string.IsNullOrEmpty(Fields.name))
                    return Fields.name;
                return model != null ? model.name : "(no model)";
            }
        }

        /// <summary>One line from the card, e.g. "rl, target left".</summary>
        public string Summary
        {
            get
            {
                string stage = string.IsNullOrEmpty(Fields.stage) ? "?" : Fields.stage;
                string target = string.IsNullOrEmpty(Fields.target) ? "no target" : "target " + Fields.target;
                return stage + ", " + target;
            }
        }
    }

    [CreateAssetMenu(fileName = "Personalities", menuName = "AgentAlign/Personality Library")]
    public class PersonalityLibrary : ScriptableObject
    {
        public List<Personality> personalities = new List<Personality>();
    }
}
